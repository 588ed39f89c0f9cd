// Notebooks as the sync service returned them (imported notes have tags: null).
export const NOTEBOOKS = [
  { id: "recipes", name: "Recipes", notes: [
    { id: 11, title: "Pão de queijo", body: "Tapioca flour, milk, cheese", tags: ["baking"], updated: "2024-05-02T09:00:00Z" },
    { id: 12, title: "Dal", body: "Red lentils, cumin", tags: ["dinner", "quick"], updated: "2024-05-10T18:30:00Z" },
  ] },
  { id: "work", name: "Work", notes: [
    { id: 21, title: "Q3 planning", body: "Hiring, roadmap", tags: ["planning"], updated: "2024-06-01T08:00:00Z" },
    { id: 22, title: "Imported from Evernote", body: "(imported)", tags: null, updated: "2019-11-11T11:11:00Z" },
  ] },
  { id: "travel", name: "Travel", notes: [
    { id: 31, title: "Lisbon", body: "Tram 28, Alfama", tags: null, updated: "2023-09-14T12:00:00Z" },
  ] },
  { id: "archive", name: "Archive", notes: [
    { id: 41, title: "Old list", body: "…", tags: null, updated: "2018-02-02T10:00:00Z" },
    { id: 42, title: "Older list", body: "…", tags: null, updated: "2017-01-01T10:00:00Z" },
  ] },
];

export const MEMBERS = { recipes: ["me", "marta"], work: ["me"], travel: ["me", "olu"], archive: ["me"] };
