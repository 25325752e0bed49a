// ESLint (flat config): typescript-eslint's recommended rules, plus the SDK boundary: plugins and
// examples import only capibara-mcp, capibara-mcp/sdk and capibara-mcp/testing, never the gateway's
// sources. Formatting is prettier's job (npm run format:check), not ESLint's.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

const PUBLIC_ONLY = 'plugins and examples use the public entry points capibara-mcp, capibara-mcp/sdk and capibara-mcp/testing, not the gateway internals';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'bench/.out/', 'coverage/', '.data/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
      // `const self = this` for generator functions and getter objects that need the outer instance.
      '@typescript-eslint/no-this-alias': ['error', { allowedNames: ['self'] }],
    },
  },
  { files: ['dashboard/src/**'], languageOptions: { globals: { ...globals.browser } } },
  {
    files: ['plugins/**', 'examples/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { regex: '^(\\.\\./)+(src|test|bench|scripts)(/|$)', message: PUBLIC_ONLY },
            { regex: '^capibara-mcp/(?!(sdk|testing)$)', message: PUBLIC_ONLY },
          ],
        },
      ],
      'no-restricted-syntax': [
        'error',
        { selector: 'ImportExpression[source.value=/^(\\.\\.\\/)+(src|test|bench|scripts)(\\/|$)/]', message: PUBLIC_ONLY },
        { selector: 'ImportExpression[source.value=/^capibara-mcp\\/(?!(sdk|testing)$)/]', message: PUBLIC_ONLY },
      ],
    },
  },
);
