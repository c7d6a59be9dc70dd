import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import type { Command } from "commander";
import { buildProgram } from "../../cli/main";

/**
 * The documentation names commands a user will type: every `opg ...` command (its subcommand path and each
 * `--flag` on it) and every `npm run <script>` must exist. Reads README.md and docs/*.md: fenced shell blocks
 * line by line, and inline code spans.
 */

const ROOT = path.join(__dirname, "..", "..");
const DOCS = [
  "README.md",
  ...fs
    .readdirSync(path.join(ROOT, "docs"))
    .filter((f) => f.endsWith(".md"))
    .map((f) => path.join("docs", f)),
];

interface Mention {
  file: string;
  line: number;
  text: string;
}

/** Shell commands in fenced blocks (continuations joined, comments dropped) and inline code spans. */
export function commandMentions(file: string, markdown: string): Mention[] {
  const out: Mention[] = [];
  const lines = markdown.split("\n");
  let fence: string | null = null;
  let pending = "";
  let pendingLine = 0;
  lines.forEach((raw, i) => {
    const trimmed = raw.trim();
    const open = /^```(\w*)/.exec(trimmed);
    if (open) {
      fence = fence === null ? open[1] || "text" : null;
      return;
    }
    if (fence !== null) {
      if (!["sh", "bash", "shell", "console", "text"].includes(fence)) return;
      const code = raw.replace(/(^|\s)#.*$/, "").trimEnd();
      if (pending === "") pendingLine = i + 1;
      if (code.endsWith("\\")) {
        pending += code.slice(0, -1) + " ";
        return;
      }
      const text = (pending + code).trim();
      pending = "";
      if (text) out.push({ file, line: pendingLine, text });
      return;
    }
    for (const m of raw.matchAll(/`([^`]+)`/g)) out.push({ file, line: i + 1, text: m[1] });
  });
  return out;
}

/** Every `opg` invocation inside a command text: the words after `opg`, up to a shell separator. */
function opgInvocations(text: string): string[][] {
  const found: string[][] = [];
  const words = text.split(/\s+/);
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    if (w !== "opg" && !w.endsWith("/opg") && !w.endsWith("bin/opg.js")) continue;
    // `npx opg`, `./node_modules/.bin/opg`, `node bin/opg.js`; not e.g. a path like .opg/cache or "opg" prose
    const prev = words[i - 1];
    const isCommand =
      prev === "npx" ||
      w.endsWith("bin/opg.js") ||
      w.endsWith(".bin/opg") ||
      i === 0 ||
      /^[A-Z_]+=/.test(prev ?? "");
    if (!isCommand) continue;
    const args: string[] = [];
    for (let j = i + 1; j < words.length; j++) {
      if (["|", "||", "&&", ";", "&", ">", "2>", ">>"].includes(words[j])) break;
      args.push(words[j]);
    }
    found.push(args);
  }
  return found;
}

function findSub(cmd: Command, name: string): Command | undefined {
  return cmd.commands.find((c) => c.name() === name || c.aliases().includes(name));
}

function knownFlags(chain: Command[]): Set<string> {
  const flags = new Set<string>(["--help", "-h", "--version", "-V"]);
  for (const c of chain) {
    for (const o of c.options) {
      if (o.long) flags.add(o.long);
      if (o.short) flags.add(o.short);
      // a `--no-x` option also documents `--x`, and the reverse
      if (o.long?.startsWith("--no-")) flags.add(`--${o.long.slice(5)}`);
    }
  }
  return flags;
}

/** Problems with one invocation: an unknown subcommand or a flag the resolved command does not take. */
export function checkInvocation(program: Command, args: string[]): string[] {
  const problems: string[] = [];
  // `a|b|c` in prose lists alternatives: check each.
  if (args.length > 0 && args.some((a) => /^[a-z-]+(\|[a-z-]+)+$/.test(a))) {
    const at = args.findIndex((a) => /^[a-z-]+(\|[a-z-]+)+$/.test(a));
    for (const alt of args[at].split("|")) {
      problems.push(...checkInvocation(program, [...args.slice(0, at), alt, ...args.slice(at + 1)]));
    }
    return problems;
  }
  const chain: Command[] = [program];
  let cmd = program;
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i];
    if (a.startsWith("-") || a.startsWith("<") || a.startsWith("[") || a === "...") break;
    const sub = findSub(cmd, a);
    if (!sub) {
      if (cmd.commands.length > 0) problems.push(`"${a}" is not a subcommand of "${fullName(chain)}"`);
      break;
    }
    cmd = sub;
    chain.push(sub);
  }
  const flags = knownFlags(chain);
  for (const a of args.slice(i)) {
    if (!/^--?[a-zA-Z]/.test(a)) continue;
    const flag = a.split("=")[0];
    if (!flags.has(flag)) problems.push(`"${fullName(chain)}" has no option ${flag}`);
  }
  return problems;
}

function fullName(chain: Command[]): string {
  return chain.map((c) => c.name()).join(" ");
}

describe("documented commands exist", function () {
  const program = buildProgram();
  const scripts = Object.keys(
    (
      JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as {
        scripts: Record<string, string>;
      }
    ).scripts,
  );
  const mentions = DOCS.flatMap((f) => commandMentions(f, fs.readFileSync(path.join(ROOT, f), "utf8")));

  it("finds the documented commands (the check reads something)", function () {
    const opg = mentions.filter((m) => opgInvocations(m.text).length > 0);
    expect(opg.length, "opg commands found in README.md and docs/").to.be.greaterThan(30);
  });

  it("every `opg ...` command and flag in README.md and docs/*.md exists", function () {
    const problems: string[] = [];
    for (const m of mentions) {
      for (const args of opgInvocations(m.text)) {
        for (const p of checkInvocation(program, args))
          problems.push(`${m.file}:${m.line}: ${p} (in: ${m.text})`);
      }
    }
    expect(problems, problems.join("\n")).to.deep.equal([]);
  });

  it("every `npm run <script>` in README.md and docs/*.md exists in package.json", function () {
    const problems: string[] = [];
    for (const m of mentions) {
      for (const match of m.text.matchAll(/npm run ([\w:.-]+)/g)) {
        if (!scripts.includes(match[1])) problems.push(`${m.file}:${m.line}: no npm script "${match[1]}"`);
      }
    }
    expect(problems, problems.join("\n")).to.deep.equal([]);
  });

  it("the checker itself catches a missing subcommand and a missing flag", function () {
    expect(checkInvocation(program, ["task", "submit", "--model", "1"])).to.deep.equal([]);
    expect(checkInvocation(program, ["task", "sbumit"])).to.have.length(1);
    expect(checkInvocation(program, ["task", "submit", "--no-such-flag"])).to.deep.equal([
      '"opg task submit" has no option --no-such-flag',
    ]);
    expect(checkInvocation(program, ["operator", "register|stake|nope"])).to.have.length(1);
  });
});
