-- ReHab Live initial schema. Works on MariaDB 10.11+ and MySQL 8.
CREATE TABLE IF NOT EXISTS exercises (
  id          VARCHAR(64)  NOT NULL PRIMARY KEY,
  name        VARCHAR(200) NOT NULL,
  description TEXT NULL,
  created_at  TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
);

CREATE TABLE IF NOT EXISTS reference_recordings (
  id            VARCHAR(64)  NOT NULL PRIMARY KEY,
  name          VARCHAR(200) NOT NULL,
  exercise_id   VARCHAR(64)  NULL,
  fps           DOUBLE       NOT NULL,
  width         INT          NOT NULL,
  height        INT          NOT NULL,
  n_frames      INT          NOT NULL,
  model         VARCHAR(64)  NOT NULL,
  model_version VARCHAR(64)  NOT NULL,
  source_sha256 CHAR(64)     NOT NULL,
  keypoints     LONGTEXT     NOT NULL COMMENT 'JSON: list of 17x[x,y,conf] or null per frame',
  created_at    TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  UNIQUE KEY uq_reference_name (name),
  CONSTRAINT fk_reference_exercise FOREIGN KEY (exercise_id) REFERENCES exercises (id)
);

CREATE TABLE IF NOT EXISTS sessions (
  id           VARCHAR(64)  NOT NULL PRIMARY KEY,
  patient_id   VARCHAR(64)  NOT NULL,
  reference_id VARCHAR(64)  NOT NULL,
  mode         ENUM('cloud', 'edge') NOT NULL DEFAULT 'cloud',
  started_at   TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  ended_at     TIMESTAMP(3) NULL,
  summary      LONGTEXT     NULL COMMENT 'JSON',
  KEY ix_sessions_patient (patient_id),
  CONSTRAINT fk_session_reference FOREIGN KEY (reference_id) REFERENCES reference_recordings (id)
);

-- One row per scored window; the primary key makes every write an upsert, so replaying a topic or
-- restarting a processor never duplicates a row.
CREATE TABLE IF NOT EXISTS scores (
  session_id         VARCHAR(64) NOT NULL,
  window_start_seq   BIGINT      NOT NULL,
  window_end_seq     BIGINT      NOT NULL,
  window_start_ts_ms BIGINT      NOT NULL,
  window_end_ts_ms   BIGINT      NOT NULL,
  similarity         DOUBLE      NOT NULL,
  phase              DOUBLE      NOT NULL,
  reps               INT         NOT NULL,
  scorer_version     VARCHAR(32) NOT NULL,
  score_ts_ms        BIGINT      NOT NULL,
  detail             LONGTEXT    NOT NULL COMMENT 'JSON: the whole Score message',
  PRIMARY KEY (session_id, window_start_seq, window_end_seq)
);
