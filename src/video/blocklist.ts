/**
 * The built-in prompt blocklist: terms for sexual content, sexual content involving minors and
 * graphic violence. Matched case- and diacritic-insensitively as whole words (a term of several
 * words as consecutive words); terms in Chinese script anywhere in the prompt.
 */
export const DEFAULT_BLOCKLIST: readonly string[] = [
  'nsfw',
  'nude',
  'nudes',
  'nudity',
  'naked',
  'topless',
  'porn',
  'porno',
  'pornographic',
  'pornography',
  'hentai',
  'sex',
  'sexual',
  'sexually explicit',
  'explicit sex',
  'genitals',
  'erotic',
  'child abuse',
  'csam',
  'rape',
  'gore',
  'gory',
  'beheading',
  'decapitation',
  'dismemberment',
  '色情',
  '裸体',
  '裸露',
  '性爱',
  '血腥',
];
