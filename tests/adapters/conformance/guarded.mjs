// The conformance suite's own client (its SDK, its `connectToServer`: name `conformance-test-client`, sampling and
// elicitation capabilities, streamable HTTP) through Guard's proxy: `node guarded.mjs URL`. Calls an allowed tool,
// a tool the policy denies, a tool that waits for approval, an allowed and a denied resource; prints one JSON
// object: per step the result the SDK resolved to, or the error it threw (message, code, data).
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const client = new Client({ name: "conformance-test-client", version: "1.0.0" },
                          { capabilities: { sampling: {}, elicitation: {} } });
await client.connect(new StreamableHTTPClientTransport(new URL(process.argv[2])));
const steps = {
  allowed: () => client.callTool({ name: "test_simple_text", arguments: {} }),
  denied: () => client.callTool({ name: "test_image_content", arguments: {} }),
  waiting: () => client.callTool({ name: "test_audio_content", arguments: {} }),
  resource: () => client.readResource({ uri: "test://static-text" }),
  deniedResource: () => client.readResource({ uri: "test://static-binary" }),
};
const out = {};
for (const [name, step] of Object.entries(steps)) {
  try {
    out[name] = { result: await step() };
  } catch (error) {
    out[name] = { error: { message: String(error?.message ?? error), code: error?.code, data: error?.data } };
  }
}
process.stdout.write(JSON.stringify(out));
await client.close();
