// The official TypeScript SDK client driving a stdio MCP server (an external peer).
// Usage: node client.mjs <command> [args...]   (stdio: launches the server)
//        node client.mjs --url http://host:port/mcp   (Streamable HTTP; an API token in
//        $MOBIUS_TOKEN is sent as "Authorization: Bearer ...")
// Prints one JSON summary line on stdout.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CreateMessageRequestSchema, ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const [command, ...args] = process.argv.slice(2);
const token = process.env.MOBIUS_TOKEN;
const requestInit = token ? { headers: { Authorization: `Bearer ${token}` } } : undefined;
const transport = command === "--url"
  ? new StreamableHTTPClientTransport(new URL(args[0]), { requestInit })
  : new StdioClientTransport({ command, args, stderr: "ignore" });
const client = new Client(
  { name: "ts-sdk-interop", version: "1.0.0" },
  { capabilities: { sampling: {}, elicitation: {} } },
);
client.setRequestHandler(CreateMessageRequestSchema, async (request) => ({
  role: "assistant",
  model: "canned",
  content: { type: "text", text: `summary of ${request.params.messages.length} message(s)` },
}));
client.setRequestHandler(ElicitRequestSchema, async () => ({
  action: "accept",
  content: { name: "Ada", color: "red" },
}));

await client.connect(transport);
const summary = {};
summary.serverName = client.getServerVersion()?.name;
summary.tools = (await client.listTools()).tools.map((t) => t.name).sort();
summary.echo = (await client.callTool({ name: "echo", arguments: { text: "from ts" } })).content[0].text;
summary.add = (await client.callTool({ name: "add", arguments: { a: 20, b: 22 } })).structuredContent;
summary.readme = (await client.readResource({ uri: "mobius://readme" })).contents[0].text;
summary.note = (await client.readResource({ uri: "notes://welcome" })).contents[0].text;
const prompt = await client.getPrompt({ name: "review_code", arguments: { code: "fn main() {}", language: "rust" } });
summary.prompt = prompt.messages[0].content.text;
summary.completion = (await client.complete({
  ref: { type: "ref/prompt", name: "review_code" },
  argument: { name: "language", value: "r" },
})).completion.values;
summary.sampling = (await client.callTool({ name: "summarize", arguments: { text: "long" } })).content[0].text;
summary.elicitation = (await client.callTool({ name: "ask_user", arguments: { question: "who?" } })).content[0].text;
await client.close();
console.log(JSON.stringify(summary));
