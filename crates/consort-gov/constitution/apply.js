// Consort's default constitution, part 4 of 4: apply(proposal, proposalId) runs every action in order.

export function apply(input, proposalId) {
  const proposal = JSON.parse(input);
  for (const action of proposal.actions) {
    actions.get(action.name).apply(action.args, proposalId);
  }
}
