// SMART launch (EHR launch: ?iss=…&launch=…; standalone: ?iss=… only). The client id and scopes come from the
// service (config.json), so one deployment serves every EHR it is registered with.
(async function () {
  const status = document.getElementById("status");
  try {
    const config = await (await fetch("config.json")).json();
    const params = new URLSearchParams(window.location.search);
    const standalone = !params.get("launch");
    await FHIR.oauth2.authorize({
      clientId: config.clientId,
      scope: standalone ? config.standaloneScope : config.ehrScope,
      redirectUri: "index.html",
      iss: params.get("iss") || undefined,
    });
  } catch (error) {
    status.textContent = "The app could not be launched: " + error.message;
    status.className = "error";
  }
})();
