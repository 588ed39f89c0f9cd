// Server calls for the board.
export async function archiveCard(boardId, cardId) {
  const res = await fetch(`/api/boards/${boardId}/cards/${cardId}/archive`, { method: "POST" });
  if (!res.ok) throw new Error(`Archive failed for card ${cardId} (HTTP ${res.status})`);
  return res.json();
}
