window.onload = function() {
  // The base layout and no standalone preset: one document, so no top bar to pick another, and
  // the preset's 250 KB bundle is not built in (.cargo/config.toml).
  window.ui = SwaggerUIBundle({
    {{config}},
    presets: [
      SwaggerUIBundle.presets.apis
    ],
    plugins: [
      SwaggerUIBundle.plugins.DownloadUrl
    ],
  });
};
