// The official TypeScript MCP SDK client through Guard's MCP proxy: `node client.mjs CONFIG_JSON`.
// CONFIG_JSON: {"command": ..., "args": [...], "env": {...}} (the proxy over stdio) or {"url": ...} (HTTP), and
// "calls": [[tool, args], ...]. Prints one JSON object: the tools listed and, per call, the result the SDK's
// `callTool` resolved to (after its check of structuredContent against the tool's outputSchema) or the error
// it threw.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const config = JSON.parse(process.argv[2]);
const transport = config.url
  ? new StreamableHTTPClientTransport(new URL(config.url))
  : new StdioClientTransport({ command: config.command, args: config.args, env: config.env, stderr: "ignore" });
const client = new Client({ name: "guard-ts-test", version: "1.0.0" });
await client.connect(transport);
const listed = await client.listTools();
const calls = [];
for (const [name, args] of config.calls) {
  try {
    calls.push({ result: await client.callTool({ name, arguments: args }) });
  } catch (error) {
    calls.push({ error: String(error && error.message ? error.message : error) });
  }
}
process.stdout.write(JSON.stringify({
  protocol: client.getServerVersion() ? "ok" : "none",
  tools: listed.tools.map((t) => ({ name: t.name, outputSchema: t.outputSchema ?? null })),
  calls,
}));
await client.close();
