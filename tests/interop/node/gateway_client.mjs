// The official TypeScript SDK client behind `mobius serve --gateway`: it calls an
// upstream's tools that ask it for sampling and elicitation (an external peer).
// Usage: node gateway_client.mjs <command> [args...]   (stdio: launches the gateway)
// Prints one JSON summary line on stdout.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { CreateMessageRequestSchema, ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const [command, ...args] = process.argv.slice(2);
const transport = new StdioClientTransport({ command, args, stderr: "ignore" });
const client = new Client(
  { name: "ts-sdk-gateway", version: "1.0.0" },
  { capabilities: { sampling: {}, elicitation: {} } },
);
const asked = [];
client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
  asked.push("sampling");
  return { role: "assistant", model: "ts-model",
           content: { type: "text", text: `ts saw ${request.params.messages.length} message(s)` } };
});
client.setRequestHandler(ElicitRequestSchema, async () => {
  asked.push("elicitation");
  return { action: "accept", content: { name: "Grace", check: true, email: "grace@example.org" } };
});

await client.connect(transport);
const text = (result) => result.content.filter((c) => c.type === "text").map((c) => c.text).join("\n");
const summary = { asked };
summary.tools = (await client.listTools()).tools.map((t) => t.name).sort();
summary.echo = text(await client.callTool({ name: "everything__echo", arguments: { message: "ts" } }));
summary.sampling = text(await client.callTool({
  name: "everything__trigger-sampling-request", arguments: { prompt: "hi", maxTokens: 5 } }));
summary.elicitation = text(await client.callTool({
  name: "everything__trigger-elicitation-request", arguments: {} }));
await client.close();
console.log(JSON.stringify(summary));
