// The TextMate grammar against every example: each line tokenizes, every word gets a scope
// beyond the file's own, and the constructs get the scopes editors colour them by.
// Run with `npm test` (after `npm ci`).
const fs = require("fs");
const path = require("path");
const vsctm = require("vscode-textmate");
const oniguruma = require("vscode-oniguruma");

const root = path.join(__dirname, "..");
const examples = path.join(root, "..", "..", "..", "examples");

async function main() {
  const wasm = fs.readFileSync(require.resolve("vscode-oniguruma/release/onig.wasm")).buffer;
  await oniguruma.loadWASM(wasm);
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (sources) => new oniguruma.OnigScanner(sources),
      createOnigString: (text) => new oniguruma.OnigString(text),
    }),
    loadGrammar: async () =>
      vsctm.parseRawGrammar(
        fs.readFileSync(path.join(root, "syntaxes", "journey.tmLanguage.json"), "utf8"),
        "journey.tmLanguage.json"
      ),
  });
  const grammar = await registry.loadGrammar("source.journey");
  const failures = [];
  const seen = new Set();
  let lines = 0;
  const files = fs.readdirSync(examples).filter((f) => f.endsWith(".journey")).sort();
  for (const file of files) {
    const text = fs.readFileSync(path.join(examples, file), "utf8").split("\n");
    let state = vsctm.INITIAL;
    text.forEach((line, number) => {
      lines += 1;
      const result = grammar.tokenizeLine(line, state);
      state = result.ruleStack;
      for (const token of result.tokens) {
        const word = line.slice(token.startIndex, token.endIndex);
        const scopes = token.scopes;
        const inner = scopes[scopes.length - 1];
        if (/[A-Za-z0-9]/.test(word) && scopes.length === 1) {
          failures.push(`${file}:${number + 1}: \`${word.trim()}\` has no scope`);
        }
        if (scopes.some((s) => s.startsWith("invalid"))) {
          failures.push(`${file}:${number + 1}: \`${word}\` is marked invalid`);
        }
        const expect = (re, scope) => {
          if (re.test(word.trim()) && !scopes.some((s) => s.startsWith(scope))) {
            failures.push(`${file}:${number + 1}: \`${word}\` is ${inner}, expected ${scope}`);
          }
        };
        if (!scopes.some((s) => s.startsWith("comment") || s.startsWith("string"))) {
          expect(/^(wait|send|if|else|split|branch)$/, "keyword.control");
          expect(/^[0-9]+[wdhms]([0-9]+[wdhms])*$/, "constant.numeric");
        }
        seen.add(inner.replace(/\.journey$/, ""));
      }
      // Declarations name what they declare.
      const declared = line.match(/^(journey|event|template|segment)\s+(?:"[^"]*"\s+as\s+)?([A-Za-z_]\w*)/);
      if (declared) {
        const start = line.indexOf(declared[2], declared[0].length - declared[2].length);
        const token = result.tokens.find((t) => t.startIndex === start);
        if (!token || !token.scopes.some((s) => s.startsWith("entity.name") || s.startsWith("variable.other.constant"))) {
          failures.push(`${file}:${number + 1}: the name \`${declared[2]}\` is not scoped as a declared name`);
        }
      }
      if (/^\s*\/\//.test(line) && !result.tokens.some((t) => t.scopes.some((s) => s.startsWith("comment")))) {
        failures.push(`${file}:${number + 1}: a comment line without a comment scope`);
      }
    });
  }
  for (const scope of [
    "comment.line.double-slash",
    "comment.line.documentation",
    "string.quoted.double",
    "constant.numeric.duration",
    "keyword.control",
    "keyword.declaration",
    "entity.name.function",
    "entity.name.type.event",
    "variable.other.property",
  ]) {
    if (![...seen].some((s) => s.startsWith(scope))) failures.push(`no token was scoped ${scope}`);
  }
  if (failures.length > 0) {
    console.error(failures.slice(0, 40).join("\n"));
    console.error(`${failures.length} problems in ${lines} lines`);
    process.exit(1);
  }
  console.log(`grammar: ${files.length} examples, ${lines} lines tokenized, ${seen.size} scopes seen`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
