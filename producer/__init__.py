"""The producer side of bulktag: the Python API other applications use.

from producer import submit
job = submit("~/photos", job="trip")
job.wait()
for record in job.results():
    ...
"""

from producer.job import Job
from producer.submit import submit

__all__ = ["Job", "submit"]
