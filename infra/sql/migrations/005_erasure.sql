-- Sessions whose patient was erased (rehab/ops/erasure.py): their ids only (random, nothing personal). The
-- score writer drops rows of these sessions (a score in flight at the erasure must not bring a row
-- back).
CREATE TABLE IF NOT EXISTS erased_sessions (
  session_id VARCHAR(64)  NOT NULL PRIMARY KEY,
  erased_at  TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
);
