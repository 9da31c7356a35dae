/**
 * The record of a laid-out street scene, in metres: the camera placement, the look, both sides of
 * the street with their buildings, and the items to draw.
 */
import type { RGB } from './colour.js';
import { Canvas, type Look } from './canvas.js';
import type { Camera } from './camera.js';

export interface Building {
  z0: number;
  z1: number;
  height: number;
  base: RGB;
  style: 'plaster' | 'brick' | 'glass';
  floorH: number;
  groundH: number;
  winW: number;
  winH: number;
  winPitch: number;
  winPhase: number;
  glass: RGB;
  frame: RGB;
  shop: RGB;
  salt: number;
}

export interface Side {
  /** +1 right, -1 left. */
  s: 1 | -1;
  /** |X| of the road edge (curb) on this side. */
  curb: number;
  verge: number;
  sidewalk: number;
  /** |X| of the back of the sidewalk (facade line). */
  back: number;
  open: boolean;
  buildings: Building[];
  /** Open side: |X| where the tree line / hedge stands. */
  treeLine: number;
  treeLineH: number;
}

interface Item {
  /** Depth used to draw far-to-near (only matters for translucent pixels; the depth test does the rest). */
  z: number;
  draw: (cv: Canvas, cam: Camera) => void;
}

export interface Scene {
  fRel: number;
  vxRel: number;
  hyRel: number;
  camH: number;
  camX: number;
  look: Look;
  zEnd: number;
  laneHalf: number;
  laneW: number;
  lanes: number;
  twoWay: boolean;
  left: Side;
  right: Side;
  asphalt: RGB;
  paving: RGB;
  curbStone: RGB;
  grass: RGB;
  paint: RGB;
  tileSize: number;
  crosswalkZ: number; // -1 when none
  tramX: number; // NaN when no rails
  dashPhase: number;
  pits: { x: number; z: number; r: number }[];
  shadows: { x0: number; x1: number; z0: number; z1: number }[];
  items: Item[];
}
