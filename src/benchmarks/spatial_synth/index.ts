// spatial-synth: our generated spatial-reasoning benchmark and training set (docs/spatial-synth.md).
// The public surface; everything else in this folder is internal.
export {
  DATASET_NAME,
  DEFAULT_SYNTH_OPTIONS,
  GENERATOR_VERSION,
  LEVEL_NAMES,
  LEVELS,
  MAX_ITEMS_PER_SPLIT,
  SPLITS,
  generateItem,
  generateItems,
  goldPosition,
  imagePath,
  itemId,
  resolveSynthOptions,
  syntheticSplit,
  writeDataset,
} from './generate';
export type { DatasetInfo, LevelName, LevelSpec, ResolvedSynthOptions, SplitName, SynthItem, SynthOptions, SynthProgress, WriteDatasetOptions } from './generate';
export { DESCRIBE_LIMITS, describeScene } from './describe';
export type { Fact, FactKind, SceneDescription } from './describe';
export { CHOICE_COUNT, MARGINS, TASKS } from './questions';
export type { TaskName } from './questions';
export { renderScene, sceneSvg } from './render';
export { COLOR_NAMES, DEFAULT_CAMERA, SHAPES, SIZES, layoutScene, project } from './scene';
export type { Camera, ColorName, Scene, SceneLayout, SceneObject, Shape, SizeClass } from './scene';
