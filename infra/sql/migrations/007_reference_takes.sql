-- A guide holds more than its first take (reference_recordings.keypoints): more correct takes (label
-- NULL; their natural variation is the scorer's tolerance) and recordings of named mistakes (label,
-- e.g. 'knees cave in'; a label appears once per recording of that mistake). Position keeps the order
-- they were given in. Replacing a guide replaces its takes.
CREATE TABLE IF NOT EXISTS reference_takes (
  reference_id  VARCHAR(64)  NOT NULL,
  position      INT          NOT NULL,
  label         VARCHAR(128) NULL,
  fps           DOUBLE       NOT NULL,
  width         INT          NOT NULL,
  height        INT          NOT NULL,
  n_frames      INT          NOT NULL,
  keypoints     LONGTEXT     NOT NULL COMMENT 'JSON: list of 17x[x,y,conf] or null per frame',
  PRIMARY KEY (reference_id, position),
  CONSTRAINT fk_take_reference FOREIGN KEY (reference_id) REFERENCES reference_recordings (id) ON DELETE CASCADE
);
