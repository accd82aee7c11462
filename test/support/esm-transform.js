// Jest transform: compiles ESM-only packages (NestJS 12) to CommonJS, since jest on Node 20 cannot require ESM.
const crypto = require('node:crypto');
const ts = require('typescript');
module.exports = {
  process(source, filename) {
    const code = source
      // CommonJS already has a require; ESM files make their own.
      .replace(/^\s*const require = createRequire\(import\.meta\.url\);?\s*$/m, '')
      .replace(/\bimport\.meta\.url\b/g, 'require("node:url").pathToFileURL(__filename).href')
      .replace(/\bimport\.meta\.resolve\b/g, 'require.resolve')
      .replace(/\bimport\.meta\.dirname\b/g, '__dirname')
      .replace(/\bimport\.meta\.filename\b/g, '__filename');
    const out = ts.transpileModule(code, {
      fileName: filename,
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, allowJs: true, esModuleInterop: true, sourceMap: false, inlineSourceMap: false },
    });
    return { code: out.outputText };
  },
  getCacheKey(source, filename) {
    return crypto.createHash('sha1').update('esm-transform-v3').update(filename).update(source).digest('hex');
  },
};
