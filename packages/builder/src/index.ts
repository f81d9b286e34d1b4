export {
  buildImage,
  type BuildImageOptions,
  type BuiltImage,
  type BuildProgress,
} from './image-build.ts';
export { detectInputKind, type InputKind } from './image-input.ts';
export { IMAGE_TOOLS, imageTool, type ImageFormat, type ImageTool } from './image-tool.ts';
export { parsePlatform, type Platform } from './oci.ts';
