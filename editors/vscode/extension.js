// Starts `quotalang lsp` for .quota files; everything else is the server's.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const settings = vscode.workspace.getConfiguration("quotalang");
  const [command, ...args] = settings.get("command");
  client = new LanguageClient(
    "quotalang",
    "quotalang",
    { command, args },
    {
      documentSelector: [{ scheme: "file", language: "quota" }],
      initializationOptions: { usage: settings.get("usage") || undefined },
    },
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
