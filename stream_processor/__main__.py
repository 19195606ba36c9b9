from rehab.settings import Settings
from stream_processor.app import run

run(Settings.from_env())
