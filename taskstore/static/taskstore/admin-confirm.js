/**
 * The task list's control actions (revoke, terminate, re-run) ask to confirm before they run:
 * Django's action form submits at once otherwise.
 */
const QUESTIONS = {
  revoke_selected: "Revoke the selected tasks?",
  terminate_selected: "Terminate the selected running tasks? Their worker processes are killed (SIGTERM) and replaced.",
  rerun_selected: "Send the selected finished tasks again with the same arguments?",
};

const form = document.getElementById("changelist-form");
form?.addEventListener("submit", (event) => {
  const chosen = form.querySelector("select[name=action]")?.value;
  const question = QUESTIONS[chosen];
  const selected = form.querySelectorAll("input.action-select:checked").length;
  if (question && selected && !globalThis.confirm(`${question} (${selected} selected)`)) event.preventDefault();
});
