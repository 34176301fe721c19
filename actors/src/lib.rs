//! upcalld actors, and the classifier and xlate they use.
