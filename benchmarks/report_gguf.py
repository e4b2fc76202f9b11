"""BENCHMARKS.md's GGUF export section and goals, from gguf_export.py's results (one entry per shape)."""

from __future__ import annotations

from typing import Any

from formatting import secs, table

from llm_magics.export.gguf import CONVERTED as EXACT  # the types whose greedy answers must stay the same

GGUF_TITLE = "11. GGUF export: merge, convert, quantize, check; how closely each GGUF answers"
OURS_GOAL = 0.03  # what llm_magics adds, as a share of the export's wall time
HEADER = ["type", "merge", "convert", "quantize", "check", "in all", "llm_magics' own", "size", "same answers"]
HEADER += ["top-1 agreement", "warnings"]
COMMAND_1B = "python benchmarks/gguf_export.py --shape 1b --threads 2 --json"


def gguf_goals(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results = {entry["result"]["shape"]: entry["result"] for entry in entries if "result" in entry}
    if not results:
        return []
    share = max(row["ours_share"] for result in results.values() for row in result["exports"])
    goals = [
        {
            "what": "GGUF export: llm_magics' own time beyond merge, convert, quantize and check",
            "goal": f"≤ {OURS_GOAL:.0%} of the export",
            "measured": f"{share:.1%} at most",
            "met": share <= OURS_GOAL,
            "why": "It is finding the checkpoint and its prompts, writing the record and renaming the directory;"
            " section 11 gives each export's share.",
        }
    ]
    if "tiny" in results:
        exact = [row for row in results["tiny"]["exports"] if row["quant"] in EXACT]
        goals.insert(
            0,
            {
                "what": "GGUF export of the trained tiny model: greedy answers of f16 and q8_0 against the model's",
                "goal": "the same on every probe prompt, or a near tie the type explains; no warning",
                "measured": ", ".join(f"{row['quant']} {_same(row)}" for row in exact),
                "met": all(row["same"] + row["ties"] == row["prompts"] and not row["warnings"] for row in exact),
                "why": "Section 11 lists the check's warnings: the prompts that differ and the likely cause.",
            },
        )
    big = results.get("1b")
    goals.append(
        {
            "what": "GGUF export of a 1B-shape model: time of each stage",
            "goal": "measured",
            "measured": ", ".join(f"{row['quant']} {row['total_s']:.0f} s" for row in big["exports"])
            if big
            else "not measured in this run",
            "met": big is not None,
            "why": f"It takes about 5 minutes and 10 GB of memory on this CPU: `{COMMAND_1B}`.",
        }
    )
    return goals


def _same(row: dict[str, Any]) -> str:
    return f"{row['same']}/{row['prompts']}" + (f" + {row['ties']} near tie" if row["ties"] else "")


def gguf_result(result: dict[str, Any]) -> list[str]:
    stages = ("merge", "convert", "quantize", "check")
    rows = [
        [
            row["quant"],
            *(secs(row["seconds"][stage]) if stage in row["seconds"] else "—" for stage in stages),
            secs(row["total_s"]),
            f"{row['ours_share']:.1%}",
            f"{row['size_mib']:.1f} MiB",
            _same(row),
            f"{row['agreement']:.0%}",
            len(row["warnings"]),
        ]
        for row in result["exports"]
    ]
    trained = "QLoRA (4-bit base)" if result["bits"] == 4 else "LoRA"
    learned = {True: ", and it answers the probe it learned", False: ", and it had not learned the probe"}
    return [
        f"Shape {result['shape']} ({result['parameters']:,} parameters; the base built in"
        f" {secs(result['build_s'])}), {trained} trained {result['steps']} steps in {secs(result['train_s'])}"
        f"{learned.get(result['learned'], '')}. Each export in a process of its own, from the embedded store;"
        f" llama-cpp-python {result['llama_cpp_python']}. `f16` and `q8_0` come straight from llama.cpp's"
        " converter; smaller types are quantized from the f16 file (llama.cpp's quantizer), so they have a"
        " quantize stage. The check loads the GGUF in llama.cpp (a process of its own) and the merged model in"
        " transformers, and compares greedy answers and top-1 next tokens on the checkpoint's probe prompts.",
        "",
        *table(HEADER, rows),
        *(
            f"- {row['quant']}, {kind}: {text}"
            for row in result["exports"]
            for kind, texts in (("note", row["notes"]), ("warning", row["warnings"]))
            for text in texts
        ),
        "",
        *(RANDOM if result["shape"] != "tiny" else []),
    ]


RANDOM = [
    "Random weights learned nothing, and their logits are far more sensitive to rounding than a trained"
    " model's: where the answers part, q8_0 moves a pair of tokens by several times the share of the"
    " logits' spread that it moves in the trained tiny model (the notes above give the numbers). A warning"
    " here is the check doing its job on a model with nothing learned to keep; the figures that count for"
    " this shape are the times and sizes.",
    "",
]
