import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";
import { handleApi } from "./lib/node.js";

// `npm run dev` runs the /api functions inside Vite's dev server, so the key stays server-side there too.
const api = {
  name: "hearth-api",
  configureServer(server) {
    server.middlewares.use(async (req, res, next) => {
      if (!(await handleApi(req, res))) next();
    });
  },
};

export default defineConfig({ plugins: [react(), api] });
