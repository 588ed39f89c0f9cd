// The board's components, written with render functions (no template compiler in the bundle).
import dayjs from "dayjs";
import { computed, defineComponent, h, ref, watch } from "vue";
import { archiveCard } from "./api.js";
import { board, findCard, moveCard, renameCard } from "./store.js";

export const Card = defineComponent({
  props: { card: Object, timeline: Boolean },
  emits: ["open"],
  setup(props, { emit }) {
    const archived = ref(false);
    async function archive() {
      await archiveCard(board.value.id, props.card.id).catch(() => null);
      archived.value = true;
    }
    return () => {
      const c = props.card;
      const due = props.timeline && c.due ? " · due " + dayjs(c.due).format("D MMM") : "";
      return h("div", { class: "card", id: `card-${c.id}` }, [
        h("span", { class: "title", onClick: () => emit("open", c) }, c.title + due),
        h("button", { class: "next", onClick: () => moveCard(c.id, +1) }, "→"),
        h("button", { class: "archive", onClick: archive }, archived.value ? "archived" : "Archive"),
      ]);
    };
  },
});

export const Board = defineComponent({
  setup() {
    const filter = ref("");
    const matcher = ref(null);
    const timeline = ref(false);
    const selected = ref(null);
    const owner = ref("");
    const moveTarget = ref("");

    watch(filter, (text) => {
      const escaped = text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      matcher.value = text ? new RegExp(escaped, "i") : null;
    });

    function open(card) {
      selected.value = card;
      owner.value = card.assignee ? card.assignee.name.toUpperCase() : "UNASSIGNED";
    }

    function rename() {
      const input = document.getElementById("rename");
      if (selected.value) renameCard(selected.value.id, input.value);
    }

    function moveSelected(event) {
      const id = Number(event.target.value);
      if (id) moveCard(id, +1);
    }

    const columns = computed(() => board.value.columns.map((col) => ({
      ...col,
      cards: col.cards.filter((c) => !matcher.value || matcher.value.test(c.title)),
    })));

    return () => h("main", [
      h("div", { class: "toolbar" }, [
        h("input", { id: "filter", placeholder: "Filter cards", value: filter.value,
          onInput: (e) => { filter.value = e.target.value; } }),
        h("button", { id: "timeline", onClick: () => { timeline.value = !timeline.value; } }, "Timeline"),
        h("select", { id: "move", value: moveTarget.value, onChange: moveSelected }, [
          h("option", { value: "" }, "Move card…"),
          ...board.value.columns.flatMap((col) => col.cards.map((c) => h("option", { value: String(c.id) }, c.title))),
        ]),
        h("input", { id: "rename", placeholder: "New title" }),
        h("button", { id: "rename-btn", onClick: rename }, "Rename"),
      ]),
      h("p", { id: "selected" }, selected.value ? `${selected.value.title} (${owner.value})` : "No card selected"),
      h("div", { class: "columns" }, columns.value.map((col) =>
        h("section", { class: "column", id: `col-${col.id}` }, [
          h("h2", col.name),
          ...col.cards.map((card) => h(Card, { card, timeline: timeline.value, key: card.id, onOpen: open })),
        ]))),
    ]);
  },
});

export { findCard };
