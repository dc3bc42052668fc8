// The typed errors of the domain. Each names what went wrong in terms a caller can act on.

/** A stored segment that cannot be trusted: bad magic, bad header, undecodable body or checksum mismatch. */
export interface SegmentCorrupt {
  kind: 'segment_corrupt';
  reason: string;
}

export interface FieldIssue {
  path: string;
  message: string;
}

/** One memory item (0-based `index`) failed validation. */
export interface InvalidItem {
  kind: 'invalid_item';
  index: number;
  issues: FieldIssue[];
}
