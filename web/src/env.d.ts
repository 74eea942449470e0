/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** Base URL of the API; empty when the client and the API share an origin (CloudFront, local). */
  readonly VITE_API_URL?: string;
  /** The product's name, shown in the header and the page titles. */
  readonly VITE_APP_NAME?: string;
  /** The upload types the deployment accepts (`UPLOAD_CONTENT_TYPES`), comma-separated. */
  readonly VITE_UPLOAD_CONTENT_TYPES?: string;
  /** The largest upload the deployment accepts (`MAX_UPLOAD_BYTES`). */
  readonly VITE_MAX_UPLOAD_BYTES?: string;
}

interface ImportMeta {
  readonly env: ImportMetaEnv;
}
