// Board state: immutable snapshots made with immer (frozen), held in a Vue shallowRef.
import { freeze, produce } from "immer";
import { shallowRef } from "vue";

export const board = shallowRef(freeze({
  id: "b-7f3a",
  columns: [
    { id: "todo", name: "To do", cards: [
      { id: 101, title: "Draft release notes", assignee: { name: "Priya" }, due: "2024-06-03" },
      { id: 102, title: "Fix login redirect", assignee: null, due: "2024-06-01" },
      { id: 103, title: "Update dependencies", assignee: null, due: null },
    ] },
    { id: "doing", name: "Doing", cards: [
      { id: 201, title: "Billing page", assignee: { name: "Tomás" }, due: "2024-05-30" },
    ] },
    { id: "done", name: "Done", cards: [
      { id: 301, title: "Onboarding emails", assignee: { name: "Lea" }, due: "2024-05-20" },
    ] },
  ],
}, true));

export function update(recipe) {
  board.value = produce(board.value, recipe);
}

export function findCard(id) {
  for (const [ci, column] of board.value.columns.entries()) {
    const index = column.cards.findIndex((c) => c.id === id);
    if (index >= 0) return { ci, index, card: column.cards[index] };
  }
  return null;
}

export function moveCard(id, step) {
  const { ci, index } = findCard(id);
  const target = ci + step;
  if (target < 0 || target >= board.value.columns.length) return false;
  update((draft) => {
    const [card] = draft.columns[ci].cards.splice(index, 1);
    draft.columns[target].cards.push(card);
  });
  return true;
}

export function renameCard(id, title) {
  update((draft) => {
    const { ci, index } = findCard(id);
    draft.columns[ci].cards[index].title = title;
  });
}
