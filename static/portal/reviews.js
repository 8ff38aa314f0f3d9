// Access review page: "select all" per kind, and the count of selected items.
(function () {
  const form = document.querySelector("[data-review-form]");
  if (!form) return;
  const count = document.getElementById("review-count");
  const update = () => {
    if (count) count.textContent = form.querySelectorAll('input[name="item"]:checked').length;
  };
  form.querySelectorAll("[data-select-all]").forEach((all) => {
    all.addEventListener("change", () => {
      const kind = all.getAttribute("data-select-all");
      form.querySelectorAll(`input[name="item"][data-kind="${kind}"]`).forEach((box) => {
        box.checked = all.checked;
      });
      update();
    });
  });
  form.addEventListener("change", update);
  update();
})();
