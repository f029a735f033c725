// Starts journey-lsp for .journey files (stdio). The executable is the setting
// `journey.server.path`, `journey-lsp` on PATH by default.
const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration("journey").get("server.path") || "journey-lsp";
  const server = { command, transport: TransportKind.stdio };
  client = new LanguageClient(
    "journey",
    "journey",
    { run: server, debug: server },
    { documentSelector: [{ scheme: "file", language: "journey" }] }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
