// Preact components, written with h() (no JSX build step).
import { formatDistanceToNowStrict } from "date-fns";
import { groupBy } from "lodash-es";
import { Component, h } from "preact";
import { useState } from "preact/hooks";
import { MEMBERS, NOTEBOOKS } from "./data.js";
import { saveNote } from "./sync.js";

export class ErrorBoundary extends Component {
  constructor() {
    super();
    this.state = { error: null };
  }

  componentDidCatch(error) {
    console.error(error);
    this.setState({ error });
  }

  render() {
    return this.state.error ? h("p", { class: "crashed" }, "This notebook could not be shown.") : this.props.children;
  }
}

function Tags({ tags }) {
  return h("span", {}, (tags || []).map((t) => h("span", { class: "tag" }, t)));
}

function Note({ note, notebook }) {
  const [status, setStatus] = useState("");
  const save = () => {
    setStatus("saving…");
    saveNote(note).then(() => setStatus("saved"), () => setStatus("not saved"));
  };
  return h("div", { class: "note", id: `note-${note.id}` }, [
    h("strong", {}, note.title), " ",
    h(Tags, { tags: note.tags }), " ",
    h("small", {}, formatDistanceToNowStrict(new Date(note.updated)) + " ago"), " ",
    h("button", { class: "save", onClick: save }, "Save"), " ", status,
  ]);
}

export function share(notebook, name) {
  const user = name.replace(/^@/, "");
  if (!MEMBERS[notebook.id].includes(user)) {
    return `@${user} is not a member of ${notebook.name}`;
  }
  return `Shared with @${user}`;
}

export function App() {
  const [current, setCurrent] = useState(NOTEBOOKS[0]);
  const [message, setMessage] = useState("");
  const byYear = groupBy(current.notes, (n) => n.updated.slice(0, 4));
  return h("div", { style: "display: flex; gap: 16px" }, [
    h("nav", {}, NOTEBOOKS.map((nb) =>
      h("button", { id: `nb-${nb.id}`, onClick: () => setCurrent(nb) }, nb.name))),
    h("section", {}, [
      h("h2", {}, current.name),
      h(ErrorBoundary, { key: current.id },
        Object.keys(byYear).sort().map((year) => h("div", { class: "year" }, [
          h("h3", {}, year),
          ...byYear[year].map((note) => h(Note, { note, notebook: current, key: note.id })),
        ]))),
      h("input", { id: "share", placeholder: "@name" }),
      h("button", { id: "share-btn", onClick: () => setMessage(share(current, document.getElementById("share").value)) }, "Share"),
      h("p", { id: "message" }, message),
    ]),
  ]);
}
