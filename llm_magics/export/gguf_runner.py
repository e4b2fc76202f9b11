"""llama.cpp's side of GGUF export, run in a process of its own (``python -m
llm_magics.export.gguf_runner``): a crash of llama.cpp ends this process, never the kernel.

``quantize IN OUT TYPE`` quantizes a GGUF (llama.cpp's ``llama_model_quantize``). Without
arguments, it checks a GGUF:

Reads a JSON job on stdin: the GGUF path, and per prompt the text as the GGUF's template wrote it
and the transformers model's greedy answer (token ids). Writes JSON on stdout: per prompt, the
ids llama.cpp tokenized the text to, its greedy answer (ids and text), and at each position of the
transformers answer llama.cpp's most likely next token and by how much llama.cpp prefers it to
the transformers token (0 where they agree); teacher-forced on the transformers answer, so one
early difference does not count for the rest.
llama.cpp's own log goes to stderr: when it cannot load a file, its last lines say why.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def check(job: dict[str, Any]) -> list[dict[str, Any]]:
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=job["gguf"], n_ctx=job["n_ctx"], logits_all=True, verbose=True, n_threads=job["threads"])
    try:
        eos, add_bos = llm.token_eos(), llm._model.add_bos_token()
        results = []
        for item in job["prompts"]:
            ids = llm.tokenize(item["text"].encode(), add_bos=add_bos, special=True)
            answer: list[int] = []
            llm.reset()
            llm.eval(ids)
            for _ in range(job["max_new_tokens"]):
                token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
                if token == eos:
                    break
                answer.append(token)
                llm.eval([token])
            theirs = item["reference"]  # the transformers answer, with its EOS when it stopped
            llm.reset()
            llm.eval(ids + theirs[:-1] if theirs else ids)
            rows = [llm.scores[len(ids) - 1 + i] for i in range(len(theirs))]
            top = [int(np.argmax(row)) for row in rows]
            results.append(
                {
                    "ids": ids,
                    "answer_ids": answer,
                    "answer": llm.detokenize(answer).decode("utf-8", errors="replace"),
                    "top": top,
                    "lead": [float(row[a] - row[b]) for row, a, b in zip(rows, top, theirs, strict=True)],
                }
            )
        return results
    finally:
        llm.close()


def quantize(source: str, target: str, kind: str) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind.upper()}")
    params.nthread = 0  # llama.cpp's choice: the machine's cores
    if llama_cpp.llama_model_quantize(source.encode(), target.encode(), params) != 0:
        sys.exit(f"llama.cpp could not quantize {source} to {kind}")


def main() -> None:
    if sys.argv[1:2] == ["quantize"]:
        quantize(*sys.argv[2:5])
        return
    job = json.load(sys.stdin)
    json.dump(check(job), sys.stdout)


if __name__ == "__main__":
    main()
