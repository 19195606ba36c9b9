-- Who may see a guide: the clinician who registered it (and their patients), or everyone in the clinic
-- when an admin registered it (NULL).
ALTER TABLE reference_recordings ADD COLUMN clinician_id VARCHAR(64) NULL;
