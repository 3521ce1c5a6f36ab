#!/usr/bin/env node
// Builds syntaxes/ipcflow.tmLanguage.json from the grammar's source,
// syntaxes/ipcflow.tmLanguage.yaml (YAML is easier to read and comment;
// editors read JSON). With --check it writes nothing and fails when the
// checked-in JSON is not what the YAML gives.
'use strict';
const fs = require('fs');
const path = require('path');
const yaml = require('js-yaml');

const src = path.join(__dirname, 'syntaxes', 'ipcflow.tmLanguage.yaml');
const dst = path.join(__dirname, 'syntaxes', 'ipcflow.tmLanguage.json');
const grammar = yaml.load(fs.readFileSync(src, 'utf8'));
const json = JSON.stringify(grammar, null, 2) + '\n';
if (process.argv.includes('--check')) {
  let have = '';
  try { have = fs.readFileSync(dst, 'utf8'); } catch (e) { /* missing: out of date */ }
  if (have !== json) {
    console.error(path.relative(process.cwd(), dst) + ' is out of date: run node editors/vscode/build.js');
    process.exit(1);
  }
} else {
  fs.writeFileSync(dst, json);
}
