// Parse and bind KQL with Microsoft's own Kusto.Language (the C# parser of Azure Data Explorer and
// Log Analytics, compiled to JavaScript: npm @kusto/language-service-next, a devDependency).
// stdin:  {"tables": {"AppTraces": "(TimeGenerated:datetime, ...)"}, "queries": {"name": "kql"}}
// stdout: {"name": ["Error KS142: The name 'Foo' does not refer to ... at 18: Foo", ...]}
// A query binds against the tables given, so an unknown table, column or function is reported
// as well as a syntax error; keys inside a dynamic column (Properties.x) are not checked here.
'use strict';
const fs = require('fs');
const path = require('path');

const packageDir = path.dirname(require.resolve('@kusto/language-service-next/package.json'));
require(path.join(packageDir, 'bridge.min.js'));
require(path.join(packageDir, 'Kusto.Language.Bridge.min.js'));
const K = globalThis.Kusto.Language;

const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const tables = Object.entries(input.tables).map(
  ([name, schema]) => new K.Symbols.TableSymbol.$ctor7(name, schema, null),
);
const database = new K.Symbols.DatabaseSymbol.$ctor1('workspace', tables, false);
const globals = K.GlobalState.Default.WithDatabase(database);

const found = {};
for (const [name, text] of Object.entries(input.queries)) {
  const diagnostics = K.KustoCode.ParseAndAnalyze(text, globals).GetDiagnostics();
  found[name] = [];
  for (let i = 0; i < diagnostics.Count; i++) {
    const d = diagnostics.getItem(i);
    const excerpt = text.substr(d.Start, Math.max(d.Length, 1));
    found[name].push(`${d.Severity} ${d.Code}: ${d.Message} at ${d.Start}: ${excerpt}`);
  }
}
process.stdout.write(JSON.stringify(found));
