// The evidence behind a card, read from the EHR's FHIR server with the launch's token: surgeries and procedures,
// symptoms and diagnoses with their onset, imaging, orders and medications, newest first. The card that launched
// the app is named in the launch's appContext ({"card": uuid, "type": card type, "evidence": ["Type/id", ...]});
// the rows it cited are marked. Each row says the record's own status (a refuted diagnosis, a procedure not done, an
// order revoked are shown as such, struck through); what was entered in error is left out.
(function () {
  "use strict";
  const SEARCHES = [
    ["Procedure", "Surgery or procedure"],
    ["Condition", "Symptom or diagnosis"],
    ["ImagingStudy", "Imaging"],
    ["DiagnosticReport", "Imaging or report"],
    ["ServiceRequest", "Ordered"],
    ["MedicationRequest", "Medication"],
    ["MedicationStatement", "Medication"],
  ];

  function text(concept) {
    if (!concept) return "";
    if (concept.text) return concept.text;
    const coding = (concept.coding || []).find(c => c.display || c.code);
    return coding ? (coding.display || coding.code) : "";
  }

  function firstDate(...values) {
    for (const value of values) {
      if (typeof value === "string" && value) return value.slice(0, 10);
      if (value && typeof value === "object" && typeof value.start === "string") return value.start.slice(0, 10);
    }
    return "";
  }

  const NOT_FACTS = new Set(["refuted", "not-done", "revoked", "cancelled", "stopped", "not-taken"]);

  function code(concept) {
    const coding = ((concept || {}).coding || [])[0];
    return coding && coding.code ? coding.code : "";
  }

  function status(r) {
    if (r.resourceType === "Condition") {
      const verification = code(r.verificationStatus);
      const clinical = code(r.clinicalStatus);
      return [verification && verification !== "confirmed" ? verification : "", clinical].filter(Boolean).join(", ");
    }
    const intent = r.intent && !["order", "plan", "original-order"].includes(r.intent) ? r.intent : "";
    return [r.status || "", intent].filter(Boolean).join(", ");
  }

  function enteredInError(r) {
    return r.status === "entered-in-error" || code(r.verificationStatus) === "entered-in-error";
  }

  function row(resource, kind) {
    const r = resource;
    let what = "";
    let date = "";
    switch (r.resourceType) {
      case "Procedure":
        what = text(r.code); date = firstDate(r.performedDateTime, r.performedPeriod); break;
      case "Condition":
        what = text(r.code);
        date = firstDate(r.onsetDateTime, r.onsetPeriod, r.recordedDate);
        if (r.onsetDateTime || r.onsetPeriod) what += " (onset)";
        break;
      case "ImagingStudy":
        what = r.description || text((r.procedureCode || [])[0]) || "Imaging study";
        date = firstDate(r.started); break;
      case "DiagnosticReport":
        what = text(r.code) + (r.conclusion ? ": " + r.conclusion : "");
        date = firstDate(r.effectiveDateTime, r.effectivePeriod, r.issued); break;
      case "ServiceRequest":
        what = text(r.code); date = firstDate(r.authoredOn, r.occurrenceDateTime, r.occurrencePeriod); break;
      default:  // MedicationRequest, MedicationStatement
        what = text(r.medicationCodeableConcept) || "Medication";
        date = firstDate(r.authoredOn, r.effectiveDateTime, r.effectivePeriod, r.dateAsserted);
    }
    const said = status(r);
    return {date, kind, what: what || r.resourceType, status: said, reference: r.resourceType + "/" + r.id,
            notFact: said.split(", ").some(s => NOT_FACTS.has(s))};
  }

  function appContext(client) {
    const raw = (client.state.tokenResponse || {}).appContext;
    if (!raw) return {};
    try { return typeof raw === "string" ? JSON.parse(raw) : raw; } catch (e) { return {}; }
  }

  function show(rows, context) {
    const cited = new Set(context.evidence || []);
    const body = document.querySelector("#timeline tbody");
    for (const item of rows) {
      const tr = document.createElement("tr");
      tr.dataset.reference = item.reference;
      tr.className = [cited.has(item.reference) ? "cited" : "", item.notFact ? "not-fact" : ""].join(" ").trim();
      for (const [value, cls] of [[item.date || "date unknown", "date"], [item.kind, "kind"], [item.what, "what"],
                                  [item.status, "status"]]) {
        const td = document.createElement("td");
        td.textContent = value;
        td.className = cls;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    document.getElementById("timeline").hidden = false;
    if (context.type) {
      const card = document.getElementById("card");
      card.textContent = "Evidence behind the card: " + context.type.replace(/-/g, " ") +
        (cited.size ? " (" + cited.size + " cited rows marked)" : "");
      card.hidden = false;
    }
  }

  FHIR.oauth2.ready().then(async client => {
    const status = document.getElementById("status");
    const patient = client.patient.id;
    if (!patient) throw new Error("the launch gave no patient");
    const rows = [];
    const failed = [];
    await Promise.all(SEARCHES.map(async ([type, kind]) => {
      try {
        const found = await client.request(type + "?patient=" + encodeURIComponent(patient),
                                           {pageLimit: 0, flat: true});
        for (const resource of found) {
          if (resource && resource.resourceType === type && !enteredInError(resource)) rows.push(row(resource, kind));
        }
      } catch (error) {
        failed.push(type);
      }
    }));
    rows.sort((a, b) => (b.date || "").localeCompare(a.date || ""));
    show(rows, appContext(client));
    status.textContent = rows.length + " entries" + (failed.length ? "; could not read: " + failed.join(", ") : "");
  }).catch(error => {
    const status = document.getElementById("status");
    status.textContent = "The record could not be read: " + error.message;
    status.className = "error";
  });
})();
