// The official TypeScript SDK client driving the Mobius context engine (an external peer).
// Usage: node context_client.mjs PROJECT <command> [args...]   (stdio: launches the server)
//        node context_client.mjs PROJECT --url http://host:port/mcp   (Streamable HTTP)
// Calls every tool, resource and prompt of the engine; prints one JSON summary line.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [project, command, ...args] = process.argv.slice(2);
const transport = command === "--url"
  ? new StreamableHTTPClientTransport(new URL(args[0]))
  : new StdioClientTransport({ command, args, stderr: "ignore" });
const client = new Client({ name: "ts-sdk-context", version: "1.0.0" }, { capabilities: {} });
await client.connect(transport);

const call = async (name, args) => (await client.callTool({ name, arguments: args })).structuredContent;
const read = async (uri) => (await client.readResource({ uri })).contents[0].text;
const prompt = async (name, args) => JSON.stringify((await client.getPrompt({ name, arguments: args })).messages);

const summary = { serverName: client.getServerVersion()?.name };
summary.tools = (await client.listTools()).tools.map((t) => t.name).sort();
summary.prompts = (await client.listPrompts()).prompts.map((p) => p.name).sort();
summary.reindex = (await call("reindex", {})).state;
summary.search = (await call("search_code", { query: "total_price" })).hits[0].name;
summary.similar = (await call("similar", { snippet: "for item in items:\n    total += item.price" })).hits[0].name;
summary.lines = await read(`context://projects/${project}/lines/4/4/shop/cart.py`);
summary.definition = (await call("definition", { name: "total_price" })).definitions[0].path;
summary.references = (await call("references", { name: "total_price" })).references.map((r) => r.scope);
summary.complexity = (await call("analyze", { path: "shop/cart.py" })).functions[0].complexity;
summary.languages = (await call("summary", {})).languages;
summary.read = (await call("read", { path: "shop/cart.py", start_line: 4, end_line: 4 })).text;
summary.projects = await read("context://projects");
summary.status = JSON.parse(await read(`context://projects/${project}/status`)).state;
summary.summaryResource = JSON.parse(await read(`context://projects/${project}/summary`)).files;
summary.file = await read(`context://projects/${project}/files/shop/checkout.py`);
summary.review = await prompt("code_review", { path: "shop/cart.py", focus: "rounding" });
summary.debug = await prompt("debug", { error: "ZeroDivisionError", path: "shop/cart.py", line: "5" });
summary.explain = await prompt("explain", { path: "shop/checkout.py" });
await client.close();
console.log(JSON.stringify(summary));
