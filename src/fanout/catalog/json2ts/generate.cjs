// Reads {"schema", "name", "banner"} as JSON on stdin and writes the TypeScript declarations to stdout.
// Run by `fanout schema --typescript` from a cache directory where `npm ci` installed package-lock.json.
"use strict";
const { compile } = require("json-schema-to-typescript");

const chunks = [];
process.stdin.on("data", (chunk) => chunks.push(chunk));
process.stdin.on("end", async () => {
  const { schema, name, banner } = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  const ts = await compile(schema, name, {
    bannerComment: banner,
    unreachableDefinitions: true,
    additionalProperties: false,
    ignoreMinAndMaxItems: true,
    format: true,
  });
  process.stdout.write(ts);
});
