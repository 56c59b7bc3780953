// Lint for the package's TypeScript (ts/): typescript-eslint's recommended rules, plus the rules
// that need type information about promises, so a promise nobody awaits (a payment settled or
// released late, or never) or a non-Error rejection is an error.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/**", "native/**", "node_modules/**", "npm/**", "examples/**", "test/**", "bench/**", "scripts/**"] },
  {
    files: ["ts/**/*.ts"],
    extends: [js.configs.recommended, ...tseslint.configs.recommended],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/await-thenable": "error",
      "@typescript-eslint/prefer-promise-reject-errors": "error",
      "@typescript-eslint/only-throw-error": "error",
      "@typescript-eslint/no-unnecessary-type-assertion": "error",
      // Values typed `any` (a framework's objects, a `require`) are given real types before use.
      "@typescript-eslint/no-unsafe-argument": "error",
      "@typescript-eslint/no-unsafe-assignment": "error",
      "@typescript-eslint/no-unsafe-call": "error",
      "@typescript-eslint/no-unsafe-member-access": "error",
      "@typescript-eslint/no-unsafe-return": "error",
      // A CommonJS package: `import x = require()` is its import form.
      "@typescript-eslint/no-require-imports": ["error", { allowAsImport: true }],
      // The public types take the frameworks' own request/response objects without a dependency
      // on their type packages (optional peers); `any` there is deliberate.
      "@typescript-eslint/no-explicit-any": "off",
    },
  },
);
