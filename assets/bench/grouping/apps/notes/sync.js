// Saving notes to the sync service.
export class ConflictError extends Error {
  constructor(message) {
    super(message);
    this.name = "ConflictError";
  }
}

export async function saveNote(note) {
  const res = await fetch(`/api/notes/${note.id}`, {
    method: "PUT",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(note),
  });
  if (res.status === 409) {
    const body = await res.json();
    throw new ConflictError(`Note ${note.id} "${note.title}" was changed by ${body.editor} on another device`);
  }
  if (!res.ok) throw new Error(`Saving note ${note.id} failed (HTTP ${res.status})`);
}
