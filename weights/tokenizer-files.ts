import { findComponentConfig } from './component.js';
import { TOKENIZER_FILES } from './families.js';
import { filePaths, pathKind } from './file-system.js';
import { readJsonFile } from './read-json.js';

/** A tokenizer's files, parsed: tokenizer.json and the tokenizer_config.json beside it ({} when there is none). */
export interface TokenizerFiles {
  readonly file: string;
  readonly tokenizer: unknown;
  readonly config: unknown;
}

/** Reads a tokenizer from a tokenizer.json path, a tokenizer folder, or a model root (TOKENIZER_FILES). */
export function readTokenizerFiles(dirOrFile: string): TokenizerFiles {
  const file = findComponentConfig(dirOrFile, TOKENIZER_FILES);
  const path = filePaths();
  const configFile = path.join(path.dirname(file), 'tokenizer_config.json');
  return { file, tokenizer: readJsonFile(file), config: pathKind(configFile) === 'file' ? readJsonFile(configFile) : {} };
}
