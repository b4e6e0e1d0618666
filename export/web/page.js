// The page: pick or drop a model (or ?model=URL), read the controls, list the words, report errors and speed.
// Query parameters share the form fields' names: ?model=model.tflite&seed=9&n=12 generates on load.
import {MakemoreError, WordModel, loadRuntime} from './makemore.js';

const $ = id => document.getElementById(id);
const form = $('controls');
const main = document.querySelector('main');
let model;
let modelName;
let firstWordsShown = false;

const busy = () => ['loading', 'generating'].includes(main.dataset.state);

function setState(state) {
  main.dataset.state = state;  // idle, loading, generating, done or error: what the tests wait on
  $('file').disabled = busy();
  for (const button of form.querySelectorAll('button')) button.disabled = busy() || !model;
}

function showError(error) {
  const message = error instanceof MakemoreError ? error.message : `Unexpected error: ${error.message || error}`;
  $('error').textContent = message;
  $('error').hidden = false;
  setState('error');
  if (!(error instanceof MakemoreError)) console.error(error);
}

async function openModel(bytesPromise, name) {
  if (busy()) return;
  setState('loading');
  $('error').hidden = true;
  $('model-info').textContent = `Loading ${name}…`;
  try {
    const bytes = new Uint8Array(await bytesPromise);
    const loaded = await WordModel.load(bytes, name);
    model?.delete();
    [model, modelName] = [loaded, name];
    $('model-info').textContent = `${name}: ${model.vocabulary.length - 1} characters, ` +
      `words up to ${model.maxLength}, ${model.batch} words a call`;
    $('prefix-hint').textContent = `Characters the model knows: ${model.characters}`;
    await generate();
  } catch (error) {
    $('model-info').textContent = model ? `${modelName} (still loaded)` : 'No model loaded.';
    showError(error);
  }
}

async function fetchModel(url) {
  const response = await fetch(url).catch(error => { throw new MakemoreError(`Cannot fetch ${url}: ${error.message}`); });
  if (!response.ok) throw new MakemoreError(`Cannot fetch ${url}: ${response.status} ${response.statusText}`);
  return response.arrayBuffer();
}

function options() {
  const number = (name, check, rule) => {
    const field = form.elements[name];
    const value = Number(field.value);
    if (field.value.trim() === '' || !check(value)) {
      throw new MakemoreError(`${field.labels[0].textContent.trim()} ${rule.replace('%', `"${field.value}"`)}`);
    }
    return value;
  };
  return {
    count: number('n', v => Number.isInteger(v) && v >= 1 && v <= 100000, 'must be a whole number from 1 to 100000, got %'),
    seed: number('seed', v => Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31, 'must be a 32-bit whole number, got %'),
    temperature: number('temperature', v => v >= 1e-6 && Number.isFinite(v), 'must be at least 1e-6, got %: try 1'),
    topK: number('top_k', v => Number.isInteger(v) && v >= 0 && v < 2 ** 31, 'must be a whole number below 2^31, got %: 0 turns it off'),
    topP: number('top_p', v => v > 0 && v <= 1, 'must be above 0 and at most 1, got %: 1 turns it off'),
    prefix: form.elements.prefix.value,
  };
}

async function generate() {
  if (!model) return;
  setState('generating');
  $('error').hidden = true;
  try {
    const chosen = options();
    const start = performance.now();
    const words = await model.words(chosen);
    const seconds = (performance.now() - start) / 1000;
    $('words').replaceChildren(...words.map(word => {
      const item = document.createElement('li');
      item.className = 'word';
      item.textContent = word;
      return item;
    }));
    const stats = $('stats');
    const perSecond = Math.round(words.length / seconds);
    stats.dataset.wordsPerSecond = perSecond;
    stats.textContent = `${words.length.toLocaleString('en')} words in ${(seconds * 1000).toFixed(1)} ms ` +
                        `(${perSecond.toLocaleString('en')} words/s)`;
    if (!firstWordsShown) {
      firstWordsShown = true;
      stats.dataset.firstWordsMs = Math.round(performance.now());
      stats.textContent += `; first words ${stats.dataset.firstWordsMs} ms after the page started loading`;
    }
    setState('done');
  } catch (error) {
    showError(error);
  }
}

function fillFormFrom(params) {
  for (const [name, value] of params) if (form.elements[name]) form.elements[name].value = value;
}

form.addEventListener('submit', event => {
  event.preventDefault();
  generate();
});
$('new-seed').addEventListener('click', () => {
  form.elements.seed.value = Math.floor(Math.random() * 2 ** 31);
  generate();
});
$('file').addEventListener('change', event => {
  const [file] = event.target.files;
  if (file) openModel(file.arrayBuffer(), file.name);
});
for (const type of ['dragenter', 'dragover']) {
  document.addEventListener(type, event => {
    event.preventDefault();
    main.classList.add('dropping');
  });
}
for (const type of ['dragleave', 'drop']) {
  document.addEventListener(type, () => main.classList.remove('dropping'));
}
document.addEventListener('drop', event => {
  event.preventDefault();
  const [file] = event.dataTransfer.files;
  if (file) openModel(file.arrayBuffer(), file.name);
});

const params = new URLSearchParams(location.search);
fillFormFrom(params);
const runtimeLoaded = loadRuntime();
if (params.has('model')) {
  openModel(fetchModel(params.get('model')), params.get('model').split('/').pop());
} else {
  setState('idle');
}
runtimeLoaded.catch(error => showError(new MakemoreError(
  `LiteRT.js did not load (${error.message || error}): run npm ci in export/web, and serve node_modules with the page`)));
