-- On-device mode is called 'device' (it was 'edge', which also names the edge/ pose workers). The API
-- still accepts 'edge' and stores 'device'; existing sessions are renamed.
ALTER TABLE sessions MODIFY COLUMN mode ENUM('cloud', 'edge', 'device') NOT NULL DEFAULT 'cloud';
UPDATE sessions SET mode = 'device' WHERE mode = 'edge';
ALTER TABLE sessions MODIFY COLUMN mode ENUM('cloud', 'device') NOT NULL DEFAULT 'cloud';
