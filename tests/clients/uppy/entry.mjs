// What the browser test needs from Uppy, as one script: window.Uppy and window.UppyTus.
import Uppy from "@uppy/core";
import Tus from "@uppy/tus";

window.Uppy = Uppy;
window.UppyTus = Tus;
