// Consort's default constitution, part 2 of 4: validate(proposal) checks every action's arguments.

export function validate(input) {
  let proposal;
  try {
    proposal = JSON.parse(input);
  } catch (e) {
    return { valid: false, description: `proposal is not JSON: ${e}` };
  }
  if (typeof proposal !== "object" || proposal === null || !Array.isArray(proposal.actions)) {
    return { valid: false, description: "proposal must be an object with an actions array" };
  }
  if (proposal.actions.length === 0) {
    return { valid: false, description: "proposal has no actions" };
  }
  const errors = [];
  proposal.actions.forEach((action, position) => {
    const definition = action !== null && typeof action === "object" ? actions.get(action.name) : undefined;
    if (definition === undefined) {
      errors.push(`action at position ${position} (${JSON.stringify(action?.name)}): no such action`);
      return;
    }
    try {
      definition.validate(action.args);
    } catch (e) {
      errors.push(`${action.name} at position ${position} failed validation: ${e.message ?? e}`);
    }
  });
  return { valid: errors.length === 0, description: errors.join(", ") };
}
