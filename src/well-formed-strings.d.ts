// String.prototype.isWellFormed / toWellFormed: ES2024, in every Node this package supports (20+), not yet in the ES2023 lib.
interface String {
  isWellFormed(): boolean;
  toWellFormed(): string;
}
