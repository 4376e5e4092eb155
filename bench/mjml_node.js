// Compile one MJML file N times with mjml required once; print the times as JSON.
// Used by bench/bench_render.py:  node bench/mjml_node.js FILE N   (run with cwd bench/.node)
const fs = require("fs");
const path = require("path");
const { performance } = require("perf_hooks");

const mjml2html = require(path.join(__dirname, ".node", "node_modules", "mjml"));
const [file, runs] = [process.argv[2], parseInt(process.argv[3] || "20", 10)];
const source = fs.readFileSync(file, "utf8");
const options = { fonts: {}, validationLevel: "soft" };  // the same as campaign: no Google Fonts

const compile = () => {
  const started = performance.now();
  const result = mjml2html(source, options);
  return [performance.now() - started, Buffer.byteLength(result.html, "utf8")];
};

const [coldMs, htmlBytes] = compile();
const warmMs = [];
for (let index = 0; index < runs; index += 1) warmMs.push(compile()[0]);
process.stdout.write(JSON.stringify({ cold_ms: coldMs, warm_ms: warmMs, html_bytes: htmlBytes }));
