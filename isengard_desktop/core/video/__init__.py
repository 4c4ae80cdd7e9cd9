"""Video clips, Qt-free: keyframe sequences (:mod:`.keyframes`), encoding/decoding MP4 and WebM
with PyAV plus the clip's stored parameters (:mod:`.container`), video job specs (:mod:`.specs`),
what a workflow lacks on a server or in the model folders (:mod:`.model_check`)."""
