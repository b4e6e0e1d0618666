// Sample words from a keras-makemore .tflite file with LiteRT.js (no DOM here: page.js is the page).
//
//   const model = await WordModel.load(bytes);
//   const words = await model.words({count: 12, seed: 9});
//
// The browser runs the file's fixed-shape signatures (LiteRT.js allocates from a signature's shapes and
// cannot resize): generate_fixed gives rows first_row .. first_row + batch - 1 of the seed's stream, so
// `count` words are the first `count` rows of the calls with first_row 0, batch, 2 * batch, ... and are
// the words export/sample_tflite.py prints for the same seed and options.
import {loadLiteRt, loadAndCompile, Tensor} from '@litertjs/core';

const WASM_DIR = new URL('./node_modules/@litertjs/core/wasm/', import.meta.url).href;
const SIGNATURES = ['generate_fixed', 'decode_fixed'];
// generate_fixed's controls and the values that turn them off (keras_makemore.controls.SamplingControls); each
// input's dtype and shape are read from the file, and an input the page does not know is reported by name.
const CONTROLS_OFF = {temperature: 1, top_k: 0, top_p: 1, min_length: 0, max_length: 0};

/** A problem with the model file or with the options, worded for the person using the page. */
export class MakemoreError extends Error {}

let runtime;

/** Load the LiteRT.js wasm runtime once per page (start it early: it is most of a cold load). */
export function loadRuntime() {
  runtime ??= loadLiteRt(WASM_DIR);
  return runtime;
}

export class WordModel {
  /** Compile a .tflite file (bytes) and read its vocabulary; `name` is used in error messages. */
  static async load(bytes, name = 'the model') {
    await loadRuntime();
    let compiled;
    try {
      compiled = await loadAndCompile(bytes, {accelerator: 'wasm'});
    } catch (error) {
      throw new MakemoreError(`${name} is not a LiteRT model (${error.message || error}): ` +
                              'choose the model.tflite that keras-makemore export wrote');
    }
    const missing = SIGNATURES.filter(key => !(key in compiled.signatures));
    if (missing.length) {
      const found = Object.keys(compiled.signatures).join(', ') || 'none';
      compiled.delete();
      throw new MakemoreError(`${name} has no ${missing.join(' or ')} signature (it has: ${found}): ` +
                              'export the run again with a keras-makemore that writes them');
    }
    const model = new WordModel(compiled);
    await model.#readVocabulary();
    return model;
  }

  constructor(compiled) {
    this.compiled = compiled;
    const tokens = compiled.signatures.generate_fixed.getOutputDetails().find(d => d.name === 'tokens');
    [this.batch, this.maxLength] = tokens.shape;  // words per call, characters per word
  }

  async #readVocabulary() {
    const out = await this.#run('decode_fixed', {tokens: 0});
    this.vocabulary = Array.from(out.vocabulary.toTypedArray());  // token id -> code point; 0 is the marker
    deleteAll(out);
  }

  /** The characters the model can write, as a string. */
  get characters() {
    return String.fromCodePoint(...this.vocabulary.slice(1));
  }

  /** `text` as the zero-padded token ids `generate_fixed` takes as its prefix. */
  encode(text) {
    const ids = Array.from(text, char => {
      const id = this.vocabulary.indexOf(char.codePointAt(0));
      if (id < 1) throw new MakemoreError(`prefix: "${char}" is not one of the model's characters (${this.characters})`);
      return id;
    });
    if (ids.length > this.maxLength) {
      throw new MakemoreError(`prefix is ${ids.length} characters, more than the model's ${this.maxLength}`);
    }
    return ids.concat(Array(this.maxLength - ids.length).fill(0));
  }

  /** `count` words for `seed`; the other options as in sample_tflite.py (0 and 1 turn top-k and top-p off). */
  async words({count, seed, temperature = 1, topK = 0, topP = 1, prefix = ''}) {
    const inputs = {...CONTROLS_OFF, seed, temperature, top_k: topK, top_p: topP, prefix: this.encode(prefix)};
    const words = [];
    for (let firstRow = 0; words.length < count; firstRow += this.batch) {
      const generated = await this.#run('generate_fixed', {...inputs, first_row: firstRow});
      let decoded;
      try {
        decoded = await this.#run('decode_fixed', {tokens: generated.tokens});
      } finally {
        deleteAll(generated);
      }
      const codePoints = decoded.code_points.toTypedArray();  // a copy
      deleteAll(decoded);
      for (let row = 0; row < this.batch && words.length < count; row++) {
        words.push(wordAt(codePoints, row * this.maxLength, this.maxLength));
      }
    }
    return words;
  }

  /**
   * The next-character logits after each prefix of `text`, through `decode_step_one`: one step a character with
   * the model's state carried, as an app that suggests the next letter runs it. Returns one Float32Array of the
   * vocabulary's size per position: after the start marker, then after each character. A word model takes
   * positions below its block_size (the file's decode signature says it).
   */
  async stepLogits(text) {
    const tokens = [0, ...this.encode(text).slice(0, Array.from(text).length)];
    let state = 0;  // not read at position 0: the step starts from the model's own initial state
    const logits = [];
    try {
      for (const [position, token] of tokens.entries()) {
        const out = await this.#run('decode_step_one', {token, position, state});
        if (state instanceof Tensor) state.delete();
        state = out.state;
        logits.push(out.logits.toTypedArray());
        out.logits.delete();
      }
    } finally {
      if (state instanceof Tensor) state.delete();
    }
    return logits;
  }

  /** Run signature `key`, giving each input a tensor of its own dtype and shape filled from `values`. */
  async #run(key, values) {
    const inputs = {};
    const made = [];
    try {
      for (const {name, dtype, shape} of this.compiled.signatures[key].getInputDetails()) {
        if (!(name in values)) throw new MakemoreError(`the model's ${key} takes an input "${name}" this page does not know`);
        if (values[name] instanceof Tensor) {
          inputs[name] = values[name];
        } else {
          inputs[name] = tensor(values[name], dtype, Array.from(shape));
          made.push(inputs[name]);
        }
      }
      return await this.compiled.run(key, inputs);
    } finally {
      for (const t of made) t.delete();
    }
  }

  delete() {
    this.compiled.delete();
  }
}

function tensor(value, dtype, shape) {
  const size = shape.reduce((a, b) => a * b, 1);
  const TypedArray = dtype === 'float32' ? Float32Array : Int32Array;
  const data = Array.isArray(value) ? TypedArray.from(value) : new TypedArray(size).fill(value);
  return new Tensor(data, shape);
}

function wordAt(codePoints, start, length) {
  let end = start;
  while (end < start + length && codePoints[end] !== 0) end++;
  return String.fromCodePoint(...codePoints.subarray(start, end));
}

function deleteAll(...records) {
  for (const record of records) for (const t of Object.values(record)) t.delete();
}
