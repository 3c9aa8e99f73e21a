// Validates an AsyncAPI document with the AsyncAPI project's own parser
// (@asyncapi/parser: the spec's JSON Schema and its Spectral ruleset) and
// every Avro payload with the project's Avro schema parser
// (@asyncapi/avro-schema-parser, which compiles it with avsc).
//
// Registering the Avro parser is not enough on its own: for AsyncAPI 3
// documents @asyncapi/parser 3.6.6 only calls a schema parser's parse(),
// never its validate() (the rule that does, `asyncapi2-schemas`, exists for
// 2.x only; the CLI has the same gap, asyncapi/cli#1813), and parse() turns
// a field typed `integr` into JSON Schema without complaint. So parse() is
// wrapped to run validate() first, which is what the 2.x rule does.
//
//   node ops/asyncapi/validate.mjs asyncapi.yaml
//
// Exit 0: no errors and no warnings. Exit 1: the diagnostics are printed, one
// per line (severity, JSON path, message, rule). Exit 2: usage or I/O error.
// Warnings fail too: the file is generated, so a warning is a generator bug
// and is cheaper to fix than to learn to ignore.

import { readFile } from 'node:fs/promises';
import { Parser, fromFile, DiagnosticSeverity } from '@asyncapi/parser';
import { AvroSchemaParser } from '@asyncapi/avro-schema-parser';

const here = new URL('.', import.meta.url);

async function version(pkg) {
  const text = await readFile(new URL(`node_modules/${pkg}/package.json`, here), 'utf8');
  return `${pkg} ${JSON.parse(text).version}`;
}

const NAMES = {
  [DiagnosticSeverity.Error]: 'error',
  [DiagnosticSeverity.Warning]: 'warning',
  [DiagnosticSeverity.Information]: 'info',
  [DiagnosticSeverity.Hint]: 'hint',
};

async function main() {
  const path = process.argv[2];
  if (!path || process.argv.length > 3) {
    console.error('usage: node ops/asyncapi/validate.mjs <asyncapi.yaml>');
    return 2;
  }
  const parser = new Parser();
  const avro = AvroSchemaParser();
  const avroProblems = [];
  parser.registerSchemaParser({
    ...avro,
    async parse(input) {
      for (const problem of await avro.validate(input)) {
        avroProblems.push({ ...problem, severity: DiagnosticSeverity.Error, code: 'avro-schema' });
      }
      return avro.parse(input);
    },
  });
  const parsed = await fromFile(parser, path).parse();
  const document = parsed.document;
  const diagnostics = [...parsed.diagnostics, ...avroProblems];
  const failing = diagnostics.filter((d) => d.severity <= DiagnosticSeverity.Warning);
  // Info and hints (e.g. "3.1.0 exists") are listed by rule only, so the
  // output shows what matters; they never fail the document.
  for (const d of failing) {
    const at = d.path && d.path.length ? d.path.join('.') : '(document)';
    const rule = d.code ? ` [${d.code}]` : '';
    console.error(`${NAMES[d.severity] ?? d.severity}: ${at}: ${d.message}${rule}`);
  }
  const notes = [...new Set(diagnostics.filter((d) => d.severity > DiagnosticSeverity.Warning).map((d) => d.code))];
  const noted = notes.length ? `; info/hints: ${notes.join(', ')}` : '';
  const versions = (await Promise.all(['@asyncapi/parser', '@asyncapi/avro-schema-parser'].map(version))).join(', ');
  if (!document || failing.length > 0) {
    console.error(`${path}: INVALID, ${failing.length} error(s)/warning(s) (${versions})`);
    return 1;
  }
  const channels = document.channels().length;
  const messages = document.messages().length;
  const operations = document.operations().length;
  console.log(
    `${path}: valid AsyncAPI ${document.version()}, ${channels} channels, ${messages} messages, ${operations} operations (${versions}${noted})`,
  );
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`validate.mjs: ${err && err.stack ? err.stack : err}`);
    process.exit(2);
  },
);
