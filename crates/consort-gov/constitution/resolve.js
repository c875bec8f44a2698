// Consort's default constitution, part 3 of 4: resolve(proposal, proposerId, votes, proposalId).
// Accepted once a majority of Active members voted for it; Rejected once that majority can no longer be
// reached; Open otherwise. Only votes of Active members count.

export function resolve(proposal, proposerId, votes, proposalId) {
  const active = new Set();
  ccf.kv[T.memberInfo].forEach((raw, id) => {
    if (ccf.bufToJsonCompatible(raw).status === "Active") active.add(ccf.bufToStr(id));
  });
  const counted = votes.filter((v) => active.has(v.member_id));
  const inFavour = counted.filter((v) => v.vote === true).length;
  const against = counted.length - inFavour;
  const majority = Math.floor(active.size / 2) + 1;
  if (inFavour >= majority) return "Accepted";
  if (active.size - against < majority) return "Rejected";
  return "Open";
}
