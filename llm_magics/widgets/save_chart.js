// The onclick of a chart's SVG and PNG links (widgets/downloads.py): saves the chart as the page
// shows it. `this` is the link; its data-kind is "svg" or "png", its data-file the file's name.
// In an inline handler the document is in scope: `URL` would be document.URL, so window.URL.
var kind = this.dataset.kind, name = this.dataset.file;
var view = this.closest(".llm-downloadable,.llm-training-view");
var chart = view && view.querySelector("svg.llm-curve");
if (!chart) return false;
// a theme colour computes to color(srgb ...), which few SVG readers know: its pixel, in hex
var pixel = document.createElement("canvas").getContext("2d", {willReadFrequently: true}), known = {};
var hex = function (value) {
  if (!known[value]) {
    pixel.clearRect(0, 0, 1, 1); pixel.fillStyle = value; pixel.fillRect(0, 0, 1, 1);
    var d = pixel.getImageData(0, 0, 1, 1).data;
    var bytes = d[3] == 255 ? [d[0], d[1], d[2]] : [d[0], d[1], d[2], d[3]];
    known[value] = "#" + bytes.map(function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }
  return known[value];
};
var plain = function (value) { return value.indexOf("color(") < 0 ? value : hex(value); };
// the copy keeps what is visible (the switches' choices), each element with its computed style
var copy = chart.cloneNode(true), from = chart.querySelectorAll("*"), to = copy.querySelectorAll("*");
var properties = ("fill fill-opacity stroke stroke-width stroke-opacity stroke-dasharray stroke-linejoin " +
  "paint-order opacity font-size font-family font-weight text-anchor dominant-baseline transform").split(" ");
for (var i = from.length - 1; i >= 0; i--) {
  var style = getComputedStyle(from[i]);
  if (style.display == "none" || style.visibility == "hidden" || from[i].tagName == "style") { to[i].remove(); continue; }
  properties.forEach(function (property) { to[i].style.setProperty(property, plain(style.getPropertyValue(property))); });
}
var box = chart.getBoundingClientRect(), width = Math.ceil(box.width), height = Math.ceil(box.height);
copy.setAttribute("width", width); copy.setAttribute("height", height);
// on the background it is drawn on: its nearest ancestor's that has one
for (var node = chart.parentElement; node; node = node.parentElement) {
  var under = getComputedStyle(node).backgroundColor;
  if (under && under != "transparent" && !/^rgba\(.*, 0\)$/.test(under)) {
    var back = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    back.setAttribute("width", "100%"); back.setAttribute("height", "100%"); back.setAttribute("fill", hex(under));
    copy.insertBefore(back, copy.firstChild);
    break;
  }
}
var text = new XMLSerializer().serializeToString(copy);
var save = function (blob) {
  var link = document.createElement("a");
  link.href = window.URL.createObjectURL(blob); link.download = name;
  document.body.appendChild(link); link.click(); link.remove();
  setTimeout(function () { window.URL.revokeObjectURL(link.href); }, 10000);
};
if (kind == "svg") { save(new Blob([text], {type: "image/svg+xml"})); return false; }
var image = new Image();
image.onload = function () {  // a PNG at twice the size shown
  var canvas = document.createElement("canvas");
  canvas.width = width * 2; canvas.height = height * 2;
  var context = canvas.getContext("2d");
  context.scale(2, 2); context.drawImage(image, 0, 0, width, height);
  canvas.toBlob(save, "image/png");
};
image.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(text);
return false;
