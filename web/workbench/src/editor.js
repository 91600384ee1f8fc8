// The workbench page's editor: CodeMirror 6 with what the page needs and nothing else.
// build.sh bundles this file into src/workbench/page/editor.js (one IIFE), which the service
// embeds and serves at /workbench/editor.js; the page's own code talks to it only through
// window.PackwellEditor, so the page stays plain inline JavaScript.

import { EditorState, Compartment } from "@codemirror/state";
import {
  EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter,
  highlightSpecialChars, drawSelection, rectangularSelection,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import {
  StreamLanguage, syntaxHighlighting, defaultHighlightStyle, bracketMatching, indentOnInput, syntaxTree,
  HighlightStyle,
} from "@codemirror/language";
import { tags } from "@lezer/highlight";
import { toml } from "@codemirror/legacy-modes/mode/toml";
import { searchKeymap, highlightSelectionMatches } from "@codemirror/search";
import {
  autocompletion, completionKeymap, closeBrackets, closeBracketsKeymap,
} from "@codemirror/autocomplete";
import { setDiagnostics, lintGutter, lintKeymap, linter } from "@codemirror/lint";

// Handlebars as the templates use it: the text around the tags is plain, the tags
// ({{name}}, {{#if ...}}, {{/if}}, {{! comment}}) are highlighted.
const handlebars = {
  name: "handlebars",
  startState: () => ({ inTag: false, comment: null }),
  token(stream, state) {
    if (state.comment) {
      if (stream.skipTo(state.comment)) {
        stream.match(state.comment);
        state.comment = null;
      } else {
        stream.skipToEnd();
      }
      return "comment";
    }
    if (!state.inTag) {
      if (stream.match("{{!--")) { state.comment = "--}}"; return "comment"; }
      if (stream.match("{{!")) { state.comment = "}}"; return "comment"; }
      if (stream.match(/^\{\{\{?[#/^>&]?/)) { state.inTag = true; return "bracket"; }
      if (!stream.skipTo("{{")) { stream.skipToEnd(); }
      return null;
    }
    if (stream.match(/^~?\}\}\}?/)) { state.inTag = false; return "bracket"; }
    if (stream.eatSpace()) { return null; }
    if (stream.match(/^"(?:[^"\\]|\\.)*"?/) || stream.match(/^'(?:[^'\\]|\\.)*'?/)) { return "string"; }
    if (stream.match(/^-?\d+(\.\d+)?/)) { return "number"; }
    if (stream.match(/^(if|else|unless|each|with|lookup|log)\b/)) { return "keyword"; }
    if (stream.match(/^[A-Za-z_@][\w.\-]*/)) { return "variableName"; }
    stream.next();
    return "operator";
  },
};

const languages = {
  toml: () => StreamLanguage.define(toml),
  handlebars: () => StreamLanguage.define(handlebars),
  text: () => [],
};

function languageFor(name) {
  return (languages[name] || languages.text)();
}

// Line and column (1-based, the column counted in characters as the validator counts them)
// to a range in the document: from the column to the end of the word there, so the underline
// is visible; a column past the line's end marks the line's last character, and on an empty
// line the finding is a point.
function rangeOf(doc, line, col) {
  const n = Math.min(Math.max(1, Number(line) || 1), doc.lines);
  const text = doc.line(n);
  let offset = 0;
  let chars = 1;
  const wanted = Math.max(1, Number(col) || 1);
  while (chars < wanted && offset < text.length) {
    const code = text.text.codePointAt(offset);
    offset += code > 0xffff ? 2 : 1;
    chars += 1;
  }
  let from = text.from + offset;
  let to = from;
  while (to < text.to && !/\s/.test(text.text[to - text.from])) { to += 1; }
  if (to === from) {
    if (from < text.to) { to = from + 1; } else if (from > text.from) { from -= 1; }
  }
  return { from, to };
}

function toCodeMirror(doc, list) {
  return (list || []).map((d) => {
    const { from, to } = rangeOf(doc, d.line, d.col);
    return {
      from,
      to,
      severity: d.severity === "warning" ? "warning" : d.severity === "info" ? "info" : "error",
      message: String(d.message || ""),
    };
  });
}

// What to offer at the cursor. After "order." or "customer." only the variables fit; elsewhere
// every known name does (segment ids in a rule's `segments`, insert ids in `give`, template
// names in `template`), each labelled with what it is.
function completionSource(getCompletions) {
  return (context) => {
    const word = context.matchBefore(/[A-Za-z_@][\w.\-]*/);
    if (!word && !context.explicit) { return null; }
    // Prose in a comment is not a name to complete.
    if (/comment/i.test(syntaxTree(context.state).resolveInner(context.pos, -1).name)) { return null; }
    const known = (getCompletions && getCompletions()) || {};
    const from = word ? word.from : context.pos;
    const typed = word ? word.text : "";
    const options = [];
    const add = (names, type, detail) => {
      (names || []).forEach((label) => options.push({ label: String(label), type, detail }));
    };
    add(known.variables, "variable", "variable");
    if (!/^(order|customer)\./.test(typed)) {
      add(known.segments, "class", "segment");
      add(known.inserts, "constant", "insert");
      add(known.templates, "text", "template");
    }
    if (!options.length) { return null; }
    return { from, options, validFor: /^[\w.\-]*$/ };
  };
}

// The default style leaves names and braces plain; in a template they are what matters.
const templateHighlight = HighlightStyle.define([
  { tag: tags.variableName, color: "#1f4e9c" },
  { tag: tags.bracket, color: "#8a4b00", fontWeight: "bold" },
]);

function theme() {
  return EditorView.theme({
    "&": { height: "100%", fontSize: "14px", backgroundColor: "#fff" },
    ".cm-scroller": {
      fontFamily: '"DejaVu Sans Mono", Menlo, Consolas, monospace',
      lineHeight: "1.5",
    },
    ".cm-gutters": { backgroundColor: "#f5f5f5", borderRight: "1px solid #d0d0d0", color: "#6b6b6b" },
    "&.cm-focused": { outline: "2px solid #1b1b1b" },
  });
}

function create(parent, options) {
  const opts = options || {};
  const language = new Compartment();
  const readOnly = new Compartment();
  const extensions = [
    lineNumbers(),
    highlightActiveLineGutter(),
    highlightSpecialChars(),
    history(),
    drawSelection(),
    rectangularSelection(),
    indentOnInput(),
    syntaxHighlighting(templateHighlight),
    syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
    // Notes and e-mails are prose: long lines wrap instead of scrolling sideways.
    EditorView.lineWrapping,
    bracketMatching(),
    closeBrackets(),
    highlightActiveLine(),
    highlightSelectionMatches(),
    lintGutter(),
    autocompletion({ override: [completionSource(opts.completions)] }),
    keymap.of([
      ...closeBracketsKeymap, ...defaultKeymap, ...searchKeymap, ...historyKeymap,
      ...completionKeymap, ...lintKeymap, indentWithTab,
    ]),
    theme(),
    EditorView.updateListener.of((update) => {
      if (update.docChanged && opts.onChange) { opts.onChange(update.state.doc.toString()); }
    }),
  ];
  if (opts.lint) {
    // The page may let the editor ask for findings itself instead of pushing them.
    extensions.push(linter(async (view) => toCodeMirror(view.state.doc, await opts.lint(view.state.doc.toString())), { delay: 300 }));
  }
  let readOnlyNow = Boolean(opts.readOnly);
  let languageNow = opts.language;
  // A file opened is a new state: its own undo history (undo never reaches into the text of
  // the file shown before), no findings of the old text.
  const stateFor = (doc) => EditorState.create({
    doc: String(doc || ""),
    extensions: [
      extensions,
      language.of(languageFor(languageNow)),
      readOnly.of(EditorState.readOnly.of(readOnlyNow)),
    ],
  });
  const view = new EditorView({ parent, state: stateFor(opts.doc) });

  const handle = {
    view,
    getDoc: () => view.state.doc.toString(),
    // Replaces the text without calling onChange: a file opened or reloaded is not an edit.
    setDoc(text, languageName) {
      if (languageName) { languageNow = languageName; }
      view.setState(stateFor(text));
    },
    setLanguage(name) {
      languageNow = name;
      view.dispatch({ effects: language.reconfigure(languageFor(name)) });
    },
    setReadOnly(on) {
      readOnlyNow = Boolean(on);
      view.dispatch({ effects: readOnly.reconfigure(EditorState.readOnly.of(readOnlyNow)) });
    },
    // [{line, col, severity, message}] for the text now in the editor.
    setDiagnostics(list) {
      view.dispatch(setDiagnostics(view.state, toCodeMirror(view.state.doc, list)));
    },
    gotoLine(line, col) {
      const { from } = rangeOf(view.state.doc, line, col);
      view.dispatch({ selection: { anchor: from }, scrollIntoView: true });
      view.focus();
    },
    focus: () => view.focus(),
    destroy: () => view.destroy(),
  };
  // Found from its element too (e.g. by a test reading the whole text, which the editor
  // only partly draws).
  parent.packwellEditor = handle;
  return handle;
}

window.PackwellEditor = { create };
