-- Who may do what (gateway/auth.py): patients enrolled by a clinician, invitation codes a patient's
-- app exchanges for a credential, clinicians' and patients' credentials (secrets stored as SHA-256:
-- they are 256-bit random, so a fast hash is enough), and an audit log of who enrolled, invited,
-- revoked, removed or erased whom.
CREATE TABLE IF NOT EXISTS patients (
  id           VARCHAR(64)  NOT NULL PRIMARY KEY,
  clinician_id VARCHAR(64)  NULL COMMENT 'the clinician who enrolled the patient (NULL: an admin)',
  created_at   TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  removed_at   TIMESTAMP(3) NULL,
  KEY ix_patients_clinician (clinician_id),
  KEY ix_patients_removed (removed_at)
);

CREATE TABLE IF NOT EXISTS credentials (
  id            VARCHAR(32)  NOT NULL PRIMARY KEY,
  kind          ENUM('patient', 'clinician') NOT NULL,
  subject       VARCHAR(64)  NOT NULL COMMENT 'the patient or clinician id',
  secret_sha256 CHAR(64)     NOT NULL,
  created_at    TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  revoked_at    TIMESTAMP(3) NULL,
  KEY ix_credentials_subject (kind, subject),
  KEY ix_credentials_revoked (revoked_at)
);

CREATE TABLE IF NOT EXISTS invitations (
  code_sha256 CHAR(64)     NOT NULL PRIMARY KEY,
  patient_id  VARCHAR(64)  NOT NULL,
  created_by  VARCHAR(100) NOT NULL,
  created_at  TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  expires_at  TIMESTAMP(3) NOT NULL,
  used_at     TIMESTAMP(3) NULL,
  KEY ix_invitations_patient (patient_id)
);

CREATE TABLE IF NOT EXISTS audit_log (
  id         BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
  at         TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  actor      VARCHAR(100) NOT NULL COMMENT 'admin, clinician:ID, patient:ID or cli:USER',
  action     VARCHAR(40)  NOT NULL,
  patient_id VARCHAR(64)  NULL,
  detail     TEXT         NULL COMMENT 'JSON',
  KEY ix_audit_patient (patient_id),
  KEY ix_audit_at (at)
);
